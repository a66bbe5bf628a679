"""Model file formats: split a file into tensor and byte segments, rebuilt byte for byte."""
