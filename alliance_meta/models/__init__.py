"""The public model functions and their result classes."""
