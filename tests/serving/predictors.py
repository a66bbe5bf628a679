"""Python predictors (trust "any") shared by the serving and fleet tests."""

# A broken export: every input is a 0 (errors and latency fine; only the predicted-label
# histogram shows it).
CONSTANT = b'''
import numpy as np

class Predictor:
    inputs = [{"name": "X", "datatype": "FP32", "shape": [-1, 64]}]
    outputs = [{"name": "label", "datatype": "INT64", "shape": [-1]}]

    def __init__(self, folder):
        pass

    def predict(self, inputs):  # a broken export: every input is a 0
        return {"label": np.zeros(len(inputs["X"]), np.int64)}
'''
