"""Helpers of one pipeline each, beside each other (the pipeline's declaration is
its module in ``actors/``): catalog sections and their store, exports' files and
outage memory."""
