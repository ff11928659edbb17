import pytest
import torch
import torch.nn.functional as F

from mnistcnn.model import ACTIVATIONS, MyNet, count_parameters


def test_mynet_is_the_lectures_network():
    model = MyNet()
    assert count_parameters(model) == 41_866
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {
        "conv1.weight": (32, 1, 3, 3),
        "conv1.bias": (32,),
        "conv2.weight": (64, 32, 3, 3),
        "conv2.bias": (64,),
        "fc1.weight": (10, 2304),
        "fc1.bias": (10,),
    }
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def lecture_forward(model: MyNet, x: torch.Tensor) -> torch.Tensor:
    """The lecture's order: activation, then pooling."""
    act = ACTIVATIONS[model.activation]
    x = F.max_pool2d(act(model.conv1(x)), 2)
    x = F.max_pool2d(act(model.conv2(x)), 2)
    return model.fc1(x.flatten(1))


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_pooling_first_computes_the_lectures_values_and_gradients(activation):
    torch.manual_seed(0)
    model = MyNet(activation)
    x = torch.randn(8, 1, 28, 28)
    y = torch.randint(0, 10, (8,))
    ours = model(x)
    F.cross_entropy(ours, y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    theirs = lecture_forward(model, x)
    F.cross_entropy(theirs, y).backward()
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-6)


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="activation"):
        MyNet("gelu")
