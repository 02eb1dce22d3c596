"""SceneLeapUltra core library: hand model, data engine, models, training, evaluation, export."""

__version__ = "0.1.0"
