"""glmrun: send large lists of image URLs to Zhipu GLM-4V vision models.

One resumable JSONL result per URL; see the README for the manual.
"""

__version__ = "0.1.0"
