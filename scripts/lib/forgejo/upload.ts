/**
 * Uploads one file as a release asset: a raw body (Forgejo takes `?name=` with any non-multipart
 * Content-Type and streams it to storage; a multipart body may be buffered in the server's RAM),
 * streamed from disk with an explicit Content-Length, so the client's memory stays flat whatever
 * the size (bun-runtime.md §2).
 *
 * The bytes are not hashed on the way: publish-release hashed the file just before, and
 * --verify full downloads every upload back. Hashing in the send path halved the throughput
 * (bench/). A file changed or replaced during the upload is caught by its size, mtime and inode.
 */
import { stat } from "node:fs/promises";
import { Failure } from "../cli/errors.ts";
import { ForgejoClient, HttpError } from "./client.ts";
import type { Attachment } from "./types.ts";
import { explainNetworkError, stallGuard } from "./http.ts";
import { formatBytes, progress } from "../cli/log.ts";

export interface LocalFile {
  name: string;
  path: string;
  size: number;
  sha256: string;
}

/**
 * The file's identity (size, mtime, inode), taken before and after the upload. A file gone from
 * the dist (deleted or rebuilt mid-run) is the run's failure, said as such, not the runtime's
 * ENOENT.
 */
async function identity(file: LocalFile, what: string) {
  return stat(file.path).catch((error: NodeJS.ErrnoException) => {
    const why = error.code === "ENOENT" ? "is gone from the dist (deleted or rebuilt during the run)" : `cannot be read (${error.code ?? "unknown error"})`;
    throw new Failure(`${what}: ${file.path} ${why}; rebuild the dist and run again`);
  });
}

export async function uploadAsset(client: ForgejoClient, releaseId: number, assetName: string, file: LocalFile): Promise<Attachment> {
  const what = `uploading ${file.name}`;
  const url = `${client.repoApi}/releases/${releaseId}/assets?name=${encodeURIComponent(assetName)}`;
  const guard = stallGuard(client.options.tuning.stallMs);
  const bar = progress(what, file.size);
  const before = await identity(file, what);
  let sent = 0;
  // Count, report progress, hand on. No read-ahead: the TransformStream pulls a chunk only when
  // the socket has taken the previous one.
  const meter = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      sent += chunk.byteLength;
      guard.touch();
      bar.update(sent);
      controller.enqueue(chunk);
    },
  });
  client.stats.calls++;
  let response: Response;
  try {
    response = await fetch(url, {
      method: "POST",
      body: Bun.file(file.path).stream().pipeThrough(meter),
      headers: {
        ...client.authHeaders(),
        "content-type": "application/octet-stream",
        "content-length": String(file.size),
      },
      // A redirect would send the body elsewhere (or, for some body kinds, silently nothing).
      redirect: "error",
      duplex: "half",
      signal: guard.signal,
    } as RequestInit);
    client.stats.bytesUploaded += sent;
  } catch (error) {
    client.stats.bytesUploaded += sent;
    const reason = guard.signal.aborted ? guard.signal.reason : error;
    const failure = explainNetworkError(reason, `${what} (after ${formatBytes(sent)} of ${formatBytes(file.size)})`, client.origin, client.answered);
    if (failure.code === "EPIPE" || failure.code === "ECONNRESET") {
      failure.message += "; a proxy body-size limit or a server restart can cause this";
    }
    throw failure;
  } finally {
    guard.stop();
  }
  if (response.status !== 201) throw client.httpError(await ForgejoClient.answerOf(response), "POST", `/releases/${releaseId}/assets`, what);
  bar.finish();
  const asset = ForgejoClient.json<Attachment>(await ForgejoClient.answerOf(response), what);
  const after = await identity(file, what);
  if (sent !== file.size || after.size !== before.size || after.mtimeMs !== before.mtimeMs || after.ino !== before.ino) {
    throw new Failure(`${what}: the file changed on disk while it was sent (${sent} bytes sent); rebuild the dist`);
  }
  if (asset.size !== file.size) {
    throw new HttpError(`${what}: the server stored ${asset.size} of ${file.size} bytes`, 201, "json", "");
  }
  return asset;
}
