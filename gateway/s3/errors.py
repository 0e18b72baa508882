"""The single S3 error table: every protocol error and every object-layer error, as S3 says it.

`S3Error` is what handlers raise for protocol problems (`S3Error("NoSuchKey")`); `to_s3_error`
translates an `ObjectLayerError` by walking its class hierarchy through `OBJECT_ERRORS`. Each
code has one row in `CODES`: HTTP status and the default message, as S3 (and MinIO) send them.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.objects import errors as oe

__all__ = ["CODES", "OBJECT_ERRORS", "ErrorSpec", "S3Error", "to_s3_error"]


@dataclass(frozen=True)
class ErrorSpec:
    status: int
    message: str


CODES: dict[str, ErrorSpec] = {
    # 400
    "AccessControlListNotSupported": ErrorSpec(400, "The bucket does not allow ACLs."),
    "AuthorizationHeaderMalformed": ErrorSpec(400, "The authorization header is malformed."),
    "AuthorizationQueryParametersError": ErrorSpec(
        400, "Error parsing the X-Amz-Credential parameter."),
    "BadRequest": ErrorSpec(400, "Bad Request."),
    "BadDigest": ErrorSpec(400, "The Content-MD5 you specified did not match what we received."),
    "EntityTooLarge": ErrorSpec(400, "Your proposed upload exceeds the maximum allowed size."),
    "EntityTooSmall": ErrorSpec(
        400, "Your proposed upload is smaller than the minimum allowed object size."),
    "ExpiredToken": ErrorSpec(400, "The provided token has expired."),
    "IncompleteBody": ErrorSpec(
        400, "You did not provide the number of bytes specified by the Content-Length HTTP "
             "header."),
    "InvalidArgument": ErrorSpec(400, "Invalid Argument."),
    "InvalidBucketName": ErrorSpec(400, "The specified bucket is not valid."),
    "InvalidDigest": ErrorSpec(400, "The Content-MD5 you specified is not valid."),
    "InvalidLocationConstraint": ErrorSpec(400, "The specified location-constraint is not "
                                                "valid."),
    "InvalidPart": ErrorSpec(
        400, "One or more of the specified parts could not be found. The part may not have been "
             "uploaded, or the specified entity tag may not match the part's entity tag."),
    "IncorrectNumberOfFilesInPostRequest": ErrorSpec(
        400, "POST requires exactly one file upload per request."),
    "InvalidPolicyDocument": ErrorSpec(
        400, "The content of the form does not meet the conditions specified in the policy "
             "document."),
    "InvalidPartOrder": ErrorSpec(
        400, "The list of parts was not in ascending order. The parts list must be specified in "
             "order by part number."),
    "InvalidRequest": ErrorSpec(400, "Invalid Request."),
    "InvalidStorageClass": ErrorSpec(400, "The storage class you specified is not valid."),
    "InvalidTag": ErrorSpec(400, "Your request contains tag input that is not valid."),
    "InvalidURI": ErrorSpec(400, "Couldn't parse the specified URI."),
    "KeyTooLongError": ErrorSpec(400, "Your key is too long."),
    "KMS.InvalidCiphertextException": ErrorSpec(
        400, "The KMS rejected the object's data key (ciphertext or context not authentic)."),
    "KMS.NotFoundException": ErrorSpec(400, "The requested KMS key does not exist."),
    "MalformedXML": ErrorSpec(
        400, "The XML you provided was not well-formed or did not validate against our "
             "published schema."),
    "MalformedTrailerError": ErrorSpec(
        400, "The request contained trailing data that was not well-formed or did not conform "
             "to our published schema."),
    "MalformedPOSTRequest": ErrorSpec(
        400, "The body of your POST request is not well-formed multipart/form-data."),
    "MaxMessageLengthExceeded": ErrorSpec(400, "Your request was too big."),
    "MaxPostPreDataLengthExceeded": ErrorSpec(
        400, "Your POST request fields preceding the upload file were too large."),
    "MetadataTooLarge": ErrorSpec(
        400, "Your metadata headers exceed the maximum allowed metadata size."),
    "MissingSecurityHeader": ErrorSpec(400, "Your request was missing a required header."),
    "RequestTimeout": ErrorSpec(
        400, "Your socket connection to the server was not read from or written to within the "
             "timeout period."),
    "UnexpectedContent": ErrorSpec(400, "This request does not support content."),
    "XAmzContentSHA256Mismatch": ErrorSpec(
        400, "The provided 'x-amz-content-sha256' header does not match what was computed."),
    # 403
    "AccessDenied": ErrorSpec(403, "Access Denied."),
    "InvalidAccessKeyId": ErrorSpec(
        403, "The Access Key Id you provided does not exist in our records."),
    "RequestTimeTooSkewed": ErrorSpec(
        403, "The difference between the request time and the server's time is too large."),
    "SignatureDoesNotMatch": ErrorSpec(
        403, "The request signature we calculated does not match the signature you provided. "
             "Check your key and signing method."),
    # 404
    "NoSuchBucket": ErrorSpec(404, "The specified bucket does not exist."),
    "NoSuchKey": ErrorSpec(404, "The specified key does not exist."),
    "NoSuchUpload": ErrorSpec(
        404, "The specified multipart upload does not exist. The upload ID may be invalid, or "
             "the upload may have been aborted or completed."),
    "NoSuchVersion": ErrorSpec(404, "The specified version does not exist."),
    "NoSuchTagSet": ErrorSpec(404, "The TagSet does not exist."),
    "ServerSideEncryptionConfigurationNotFoundError": ErrorSpec(
        404, "The server side encryption configuration was not found."),
    # others
    "MethodNotAllowed": ErrorSpec(
        405, "The specified method is not allowed against this resource."),
    "BucketAlreadyOwnedByYou": ErrorSpec(
        409, "Your previous request to create the named bucket succeeded and you already own "
             "it."),
    "BucketNotEmpty": ErrorSpec(409, "The bucket you tried to delete is not empty."),
    "OperationAborted": ErrorSpec(
        409, "A conflicting conditional operation is currently in progress against this "
             "resource. Please try again."),
    "MissingContentLength": ErrorSpec(411, "You must provide the Content-Length HTTP header."),
    "PreconditionFailed": ErrorSpec(
        412, "At least one of the preconditions you specified did not hold."),
    "InvalidRange": ErrorSpec(416, "The requested range is not satisfiable."),
    "InternalError": ErrorSpec(
        500, "We encountered an internal error, please try again."),
    "NotImplemented": ErrorSpec(
        501, "A header or query you provided implies functionality that is not implemented."),
    "ServiceUnavailable": ErrorSpec(503, "The service is unavailable. Please retry."),
    # deliberately a 5xx: stored data or metadata failed authentication (tampering or a bug)
    "XTesseraObjectTampered": ErrorSpec(
        500, "The object's encrypted data or metadata failed authentication."),
    "SlowDown": ErrorSpec(503, "Please reduce your request rate."),
}


class S3Error(Exception):
    """An S3 error response: a code from `CODES`, optionally a more precise message and
    extra headers or XML fields (e.g. `Content-Range` for InvalidRange)."""

    def __init__(self, code: str, message: str | None = None, *,
                 headers: dict[str, str] | None = None, status: int | None = None,
                 **fields: str):
        spec = CODES[code]
        super().__init__(message or spec.message)
        self.code = code
        self.message = message or spec.message
        self.status = status or spec.status
        self.headers = headers or {}
        self.fields = fields  # extra XML elements, e.g. BucketName, Key, UploadId

    def __repr__(self) -> str:
        return f"S3Error({self.code!r}, {self.message!r})"


# Object-layer error class -> S3 code and, when it reads better, a fixed message. A class not
# listed takes the row of its nearest listed ancestor.
OBJECT_ERRORS: dict[type[oe.ObjectLayerError], tuple[str, str | None]] = {
    oe.ObjectLayerError: ("InternalError", None),
    oe.NotFoundError: ("NoSuchKey", None),
    oe.BucketNotFound: ("NoSuchBucket", None),
    oe.ObjectNotFound: ("NoSuchKey", None),
    oe.VersionNotFound: ("NoSuchVersion", None),
    oe.UploadNotFound: ("NoSuchUpload", None),
    oe.ConflictError: ("OperationAborted", None),
    oe.BucketAlreadyExists: ("BucketAlreadyOwnedByYou", None),
    oe.BucketNotEmpty: ("BucketNotEmpty", None),
    oe.InvalidInput: ("InvalidArgument", None),
    oe.BadDigest: ("BadDigest", None),
    oe.InvalidPart: ("InvalidPart", None),
    oe.InvalidPartOrder: ("InvalidPartOrder", None),
    oe.EntityTooSmall: ("EntityTooSmall", None),
    oe.EntityTooLarge: ("EntityTooLarge", None),
    oe.IncompleteBody: ("IncompleteBody", None),
    oe.EncryptionError: ("InvalidRequest", None),
    oe.InvalidBucketEncryption: ("MalformedXML", None),
    oe.SSEInvalidArgument: ("InvalidArgument", None),
    oe.SSEInvalidRequest: ("InvalidRequest", None),
    oe.SSEBadRequest: ("BadRequest", None),
    oe.SSENotImplemented: ("NotImplemented", None),
    oe.SSECKeyRequired: ("InvalidRequest",
                         "The object was stored using a form of Server Side Encryption. The "
                         "correct parameters must be provided to retrieve the object."),
    oe.SSECKeyMismatch: ("AccessDenied",
                         "The SSE-C key provided does not match the key used to encrypt the "
                         "object."),
    oe.SSENotApplicable: ("InvalidRequest",
                          "The encryption parameters are not applicable to this object."),
    oe.KMSNotConfigured: ("NotImplemented",
                          "Server side encryption specified but KMS is not configured."),
    oe.KMSKeyNotFound: ("KMS.NotFoundException", None),
    oe.KMSAccessDenied: ("AccessDenied", "The gateway is not allowed to use the KMS key."),
    oe.KMSInvalidCiphertext: ("KMS.InvalidCiphertextException", None),
    oe.KMSUnavailable: ("ServiceUnavailable",
                        "No KES key server answered: the key management service is "
                        "unavailable; please retry."),
    oe.ObjectTampered: ("XTesseraObjectTampered", None),
    oe.QuorumError: ("SlowDown", None),
    oe.StorageFull: ("SlowDown", "Storage nodes have no free space left; please retry later."),
}


# Errors whose own text is written for the client (it says which header or key is wrong).
OWN_MESSAGE: tuple[type[oe.ObjectLayerError], ...] = (
    oe.InvalidBucketEncryption, oe.SSEInvalidArgument, oe.SSEInvalidRequest, oe.SSEBadRequest,
    oe.SSENotImplemented, oe.KMSKeyNotFound)


def to_s3_error(exc: oe.ObjectLayerError) -> S3Error:
    """The S3 error for an object-layer error (nearest listed class wins)."""
    for cls in type(exc).__mro__:
        if cls in OBJECT_ERRORS:
            code, message = OBJECT_ERRORS[cls]  # type: ignore[index]
            break
    else:  # pragma: no cover - ObjectLayerError is always in the table
        code, message = "InternalError", None
    if message is None and isinstance(exc, OWN_MESSAGE) and str(exc):
        message = str(exc)
    if code == "BadDigest" and isinstance(exc, oe.BadDigest) and exc.algorithm != "MD5":
        message = f"The {exc.algorithm} you specified did not match the calculated checksum."
    return S3Error(code, message)
