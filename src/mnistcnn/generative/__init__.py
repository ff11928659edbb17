"""The lecture's last third: autoencoders, variational and conditional autoencoders, and a conditional GAN.

`nets` holds the networks, `tasks` their training steps and evaluations (the Trainer's per-kind seam, see
`mnistcnn.kinds`), `judge` measures what they make with a trained MyNet, `sample` draws digits (mnistcnn
generate) and `pictures` the show commands. Every kind takes pixels/255 in [0, 1] and makes pixels in [0, 1].
"""
