"""mnistcnn: train, evaluate and explain the lecture's MyNet on MNIST."""

__version__ = "0.6.0"
