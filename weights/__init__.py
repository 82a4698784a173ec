"""Shipped VAE weights (``*.keras``) and their manifest; installed as ``lenstronomy_vae.weights``."""
