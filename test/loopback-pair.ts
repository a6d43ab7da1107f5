/**
 * A connected loopback TCP pair for unit tests that check what the event loop does between two
 * turns: what the test writes on `client` is read on `peer` once the loop polls.
 */
import { connect, createServer, type Socket } from "node:net";

export async function loopbackPair(): Promise<{ client: Socket; peer: Socket; close: () => void }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const accepted = new Promise<Socket>((r) => server.once("connection", r));
  const client = connect((server.address() as { port: number }).port, "127.0.0.1");
  await new Promise<void>((r) => client.once("connect", () => r()));
  const peer = await accepted;
  return {
    client,
    peer,
    close: () => {
      client.destroy();
      peer.destroy();
      server.close();
    },
  };
}
