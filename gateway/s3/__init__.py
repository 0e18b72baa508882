"""The S3 front: HTTP/ASGI application, routing, SigV4/SigV2, aws-chunked bodies, checksums,
XML and the S3 error table, over an `ObjectLayer`."""

from .errors import S3Error
from .server import S3Application

__all__ = ["S3Application", "S3Error"]
