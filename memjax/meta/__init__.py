"""Meta-learning (MAML, FOMAML, Reptile, ANIL) on Optax. Not built yet."""
