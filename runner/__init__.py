"""glmrun: send large lists of image URLs to Zhipu GLM-4V vision models, one resumable JSONL result per URL."""

__version__ = "0.1.0"
