/** The start-up floor: the smallest server a runtime can start, answering 204 to everything. */
import { createServer } from "node:http";

createServer((_req, res) => {
  res.statusCode = 204;
  res.end();
}).listen(Number(process.argv[2]), "127.0.0.1");
process.once("SIGTERM", () => process.exit(0));
