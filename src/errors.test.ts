import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { EnvdError, fromNodeError, httpStatusOf, spawnError } from "./errors.ts";

const errnoError = (code: string, syscall = "open") => Object.assign(new Error(`${code}: failed, ${syscall}`), { code, syscall });

// errno → Connect code → HTTP status a REST route answers.
const TABLE: [errno: string, code: Code, status: number][] = [
  ["ENOENT", Code.NotFound, 404],
  ["EEXIST", Code.AlreadyExists, 409],
  ["EACCES", Code.PermissionDenied, 403],
  ["EPERM", Code.PermissionDenied, 403],
  ["ENOTDIR", Code.InvalidArgument, 400],
  ["EISDIR", Code.InvalidArgument, 400],
  ["ENAMETOOLONG", Code.InvalidArgument, 400],
  ["ELOOP", Code.FailedPrecondition, 400],
  ["EMFILE", Code.ResourceExhausted, 429],
  ["ENFILE", Code.ResourceExhausted, 429],
  ["EAGAIN", Code.ResourceExhausted, 429],
  ["ENOMEM", Code.ResourceExhausted, 429],
  ["ENOSPC", Code.ResourceExhausted, 507],
  ["EDQUOT", Code.ResourceExhausted, 507],
  ["EXDEV", Code.FailedPrecondition, 400],
  ["ENOTEMPTY", Code.FailedPrecondition, 400],
  ["EROFS", Code.FailedPrecondition, 400],
  ["EIO", Code.Internal, 500],
  ["EBADF", Code.Internal, 500],
];

for (const [errno, code, status] of TABLE) {
  test(`${errno} → ${Code[code]} → HTTP ${status}`, () => {
    const cause = errnoError(errno);
    const err = fromNodeError(cause, "error opening '/x'");
    assert.equal(err.code, code);
    assert.equal(httpStatusOf(err), status);
    assert.equal(err.cause, cause, "the cause is kept for the log");
    assert.match(err.rawMessage, /^error opening '\/x': /);
  });
}

test("every Connect code has the HTTP status of the Connect protocol (507 only where set)", () => {
  const expected: [Code, number][] = [
    [Code.Canceled, 499],
    [Code.Unknown, 500],
    [Code.InvalidArgument, 400],
    [Code.DeadlineExceeded, 504],
    [Code.NotFound, 404],
    [Code.AlreadyExists, 409],
    [Code.PermissionDenied, 403],
    [Code.ResourceExhausted, 429],
    [Code.FailedPrecondition, 400],
    [Code.Aborted, 409],
    [Code.OutOfRange, 400],
    [Code.Unimplemented, 501],
    [Code.Internal, 500],
    [Code.Unavailable, 503],
    [Code.DataLoss, 500],
    [Code.Unauthenticated, 401],
  ];
  for (const [code, status] of expected) assert.equal(httpStatusOf(new ConnectError("x", code)), status, Code[code]);
  assert.equal(httpStatusOf(new EnvdError(Code.ResourceExhausted, "x", { httpStatus: 507 })), 507);
  assert.equal(httpStatusOf(new Error("a bug")), 500);
});

test("spawn failures: resources → resource_exhausted, deadline/cancel from the signal, the rest invalid_argument", () => {
  for (const errno of ["EAGAIN", "ENOMEM", "EMFILE", "ENFILE", "ENOSPC"]) {
    assert.equal(spawnError(errnoError(errno, "spawn")).code, Code.ResourceExhausted, errno);
  }
  for (const errno of ["ENOENT", "EACCES", "ENOEXEC", "ENOTDIR"]) {
    assert.equal(spawnError(errnoError(errno, "spawn")).code, Code.InvalidArgument, errno);
  }
  assert.equal(spawnError(errnoError("ENOENT"), AbortSignal.abort(new ConnectError("deadline", Code.DeadlineExceeded))).code, Code.DeadlineExceeded);
  const timedOut = AbortSignal.abort(new DOMException("timeout", "TimeoutError"));
  assert.equal(spawnError(errnoError("EINTR"), timedOut).code, Code.DeadlineExceeded);
  assert.equal(spawnError(errnoError("EINTR"), AbortSignal.abort()).code, Code.Canceled);
});
