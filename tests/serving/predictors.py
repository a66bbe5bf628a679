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

# Answers (as "label") the CPUs its constructor ran on: where the version was loaded.
LOADED_ON = b'''
import os
import numpy as np

class Predictor:
    inputs = [{"name": "X", "datatype": "FP32", "shape": [-1, 64]}]
    outputs = [{"name": "label", "datatype": "INT64", "shape": [-1]}]

    def __init__(self, folder):
        self.cpus = sorted(os.sched_getaffinity(0))

    def predict(self, inputs):
        return {"label": np.array(self.cpus, np.int64)}
'''


# Answers every input with zeros but fails on a poisoned one (X[0][0] < -1e6): a request
# the client got wrong, refused by any version.
POISONED = b'''
import numpy as np

class Predictor:
    inputs = [{"name": "X", "datatype": "FP32", "shape": [-1, 64]}]
    outputs = [{"name": "label", "datatype": "INT64", "shape": [-1]}]

    def __init__(self, folder):
        pass

    def predict(self, inputs):
        if inputs["X"][0][0] < -1e6:
            raise ValueError("poisoned input")
        return {"label": np.zeros(len(inputs["X"]), np.int64)}
'''
