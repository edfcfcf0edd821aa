"""Core: the network with its MC-dropout sites, the sampler and the tiling that make T samples cheap."""
