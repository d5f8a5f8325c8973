"""Helpers of the exports pipeline: encoding export files and remembering a
product-API outage across processes."""
