"""trickbench: a versioned pipeline that benchmarks training tricks for deep convolutional networks."""

__version__ = "0.1.0"
