"""Core: what each map is (the registry) and the pure tensor functions that compute them."""
