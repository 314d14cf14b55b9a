"""Whole files of any size: encoding and predicting chunk by chunk, resumable, locally or on
Ray."""
