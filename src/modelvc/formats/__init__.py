"""Model file formats: split a file into tensor and byte segments, rebuilt byte for byte.

    plan_file(path) -> FilePlan          detect the format and plan the file
    iter_segment_bytes(path, plan)       each segment with its bytes, in order
    verify_plan(plan)                    segments sorted, contiguous, covering the file
    cdc_boundaries(path_or_buffer)       content-defined chunk end offsets

No third-party format package is needed: safetensors headers and the ONNX protobuf wire
format are parsed here, and pickles are never unpickled. The ONNX parser (formats.onnx,
formats.protowire) is imported when an ONNX file is planned: a commit of safetensors
files does not load it.
"""

from modelvc.formats.chunking import cdc_boundaries
from modelvc.formats.detect import plan_file
from modelvc.formats.plan import FilePlan, Segment
from modelvc.formats.rebuild import iter_segment_bytes, verify_plan
from modelvc.formats.safetensors import ITEMSIZES, read_safetensors_header

__all__ = [
    "ITEMSIZES",
    "FilePlan",
    "Segment",
    "cdc_boundaries",
    "iter_segment_bytes",
    "plan_file",
    "read_safetensors_header",
    "verify_plan",
]
