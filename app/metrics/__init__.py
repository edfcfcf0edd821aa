"""Core: segmentation quality, calibration and detection statistics, streamed; the one evaluation core."""
