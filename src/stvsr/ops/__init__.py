"""Low-level operators: resizing, colour conversion, flow warping, deformable convolution."""
