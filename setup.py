"""The project's metadata is in setup.cfg; this adds the one C module.

``_backupsvc_blocks`` (native/blocks.c) hashes a piece's blocks with one
release of the interpreter lock. It is optional: without a C compiler or
OpenSSL's headers the install goes on and the engine uses hashlib instead.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("_backupsvc_blocks", ["native/blocks.c"], libraries=["crypto"],
                             optional=True)])
