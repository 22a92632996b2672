"""Learning from pixels: image encoders, DrQ's random-shift augmentation, pretrained weights."""
