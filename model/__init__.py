"""SAEMI's particle segmentation model: U-Net factory, data, training, tiled inference, evaluation.

Importing this package is cheap: TensorFlow is imported only inside the functions that need it.
The shipped weights (``saemi_unet.keras``) and their settings (``config.json``) live beside this file.
"""
