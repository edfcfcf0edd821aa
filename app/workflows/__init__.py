"""Workflows: analyse an image or a folder, evaluate a folder, calibrate a bundle, train the default model."""
