import optax


def make_optimizer(learning_rate: float = 3e-4, warmup_steps: int = 0) -> optax.GradientTransformation:
    """Adam, with the learning rate ramped linearly from 0 over `warmup_steps` (SERL: 2000 for actor/critic)."""
    if warmup_steps > 0:
        learning_rate = optax.linear_schedule(0.0, learning_rate, warmup_steps)
    return optax.adam(learning_rate)
