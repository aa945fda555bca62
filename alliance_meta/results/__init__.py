"""Result base classes and summary tables shared by every model."""
