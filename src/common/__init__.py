"""Shared code of the vit-cars-poc notebooks: data, models, results, figures, predictions."""
