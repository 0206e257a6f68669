"""ganport: the classic Keras MNIST GAN, trained fast and carried to ONNX and Deeplearning4j."""

__version__ = "0.1.0"
