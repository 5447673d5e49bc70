/**
 * A loopback upload sink for the benchmarks: accepts any POST/PUT body (raw or multipart),
 * streams it and throws the bytes away, and answers 201 with an Attachment-shaped JSON body, so
 * the project's uploadAsset() and curl -T / curl -F can be timed against the same receiver.
 *
 * It neither stores nor hashes: the server's own costs stay out of the client comparison.
 * `received` is the body size of the last upload, as the server counted it.
 */
export interface Sink {
  url: string;
  /** Body bytes of the most recent upload. */
  readonly received: number;
  /** Requests seen. */
  readonly requests: number;
  stop(): Promise<void>;
}

export function startSink(): Sink {
  let received = 0;
  let requests = 0;
  let nextId = 1;
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    maxRequestBodySize: 16 * 1024 ** 3,
    idleTimeout: 0,
    async fetch(req) {
      requests++;
      let bytes = 0;
      if (req.body) for await (const chunk of req.body as unknown as AsyncIterable<Uint8Array>) bytes += chunk.byteLength;
      received = bytes;
      const name = new URL(req.url).searchParams.get("name") ?? "upload";
      const id = nextId++;
      return Response.json(
        { id, name, size: bytes, download_count: 0, created_at: new Date().toISOString(), uuid: crypto.randomUUID(), browser_download_url: "", type: "attachment" },
        { status: 201 },
      );
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}`,
    get received() {
      return received;
    },
    get requests() {
      return requests;
    },
    async stop() {
      await server.stop(true);
    },
  };
}

if (import.meta.main) {
  const sink = startSink();
  console.log(sink.url);
}
