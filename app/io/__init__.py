"""I/O: decoding uploads and masks, model bundles, rendering, encoding and reports, packaged resources."""
