"""The project's metadata is in setup.cfg; this adds the one C module.

``_backupsvc_blocks`` (native/blocks.c) hashes a piece's blocks, reads pieces
around holes and copies bulk bytes, each with one release of the interpreter
lock, and finds the zero pages of restored data. It is optional: without a C
compiler or OpenSSL's headers the install goes on and the engine uses hashlib
and Python (backupsvc/native.py) instead.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("_backupsvc_blocks", ["native/blocks.c"], libraries=["crypto"],
                             optional=True)])
