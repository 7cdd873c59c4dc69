"""Pretrained weights from local files: reading them (`files`: safetensors, Keras `.h5`, PyTorch
pickles on request), converting torchvision / torchxrayvision / Keras DenseNets and Hugging Face
BERTs to this project's modules, and applying them to a fresh train state (`encoders`)."""
