"""Live figures: data versions of figures and the streams that tell pages of new ones."""
