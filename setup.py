"""Only the C extension lives here; everything else is in pyproject.toml.

The codec's hot loops (modelvc/codec/_kernels.c) build where a C compiler is present;
`optional` lets the install go on without one, and modelvc.codec.kernels then runs
their numpy versions.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "modelvc.codec._kernels",
            sources=["src/modelvc/codec/_kernels.c"],
            extra_compile_args=["-O3", "-fno-strict-aliasing"],
            optional=True,
        )
    ]
)
