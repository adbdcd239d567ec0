// A small TCP proxy between a client and Postgres that a test can break: `refuse` destroys every
// connection and stops listening (like a crashed server or a closed port), `blackhole` keeps
// accepting and holding connections but forwards nothing (like a partitioned network), `restore`
// `slam` accepts every connection and closes it at once (like a pgbouncer or a load balancer
// whose server is down), `restore` listens and forwards again on the same port.
import net from 'node:net';

type Mode = 'up' | 'refuse' | 'blackhole' | 'slam';

export class TcpProxy {
  #server: net.Server | undefined;
  #sockets = new Set<net.Socket>();
  #mode: Mode = 'up';
  port = 0;
  /** Connections accepted over the proxy's life. */
  connections = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  get mode(): Mode {
    return this.#mode;
  }

  async start(): Promise<number> {
    await this.#listen(0);
    return this.port;
  }

  async #listen(port: number): Promise<void> {
    const server = net.createServer((client) => this.#accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.#server = server;
  }

  #track(s: net.Socket): void {
    this.#sockets.add(s);
    s.on('close', () => this.#sockets.delete(s));
    s.on('error', () => s.destroy());
  }

  #accept(client: net.Socket): void {
    this.connections++;
    this.#track(client);
    if (this.#mode === 'slam') {
      client.destroy();
      return;
    }
    if (this.#mode === 'blackhole') {
      client.pause(); // hold it: read nothing, answer nothing
      return;
    }
    const upstream = net.connect(this.targetPort, this.targetHost);
    this.#track(upstream);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** Every connection is reset and the port stops listening: clients get ECONNREFUSED. */
  async refuse(): Promise<void> {
    this.#mode = 'refuse';
    const server = this.#server;
    this.#server = undefined;
    for (const s of this.#sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Existing connections stop forwarding; new ones are accepted and held without an answer. */
  blackhole(): void {
    this.#mode = 'blackhole';
    for (const s of this.#sockets) {
      s.unpipe();
      s.pause();
    }
  }

  /** Connections are accepted and closed at once, existing ones included; the port stays open. */
  async slam(): Promise<void> {
    this.#mode = 'slam';
    for (const s of this.#sockets) s.destroy();
    if (!this.#server) await this.#listen(this.port);
  }

  /** Back to forwarding; connections held by a blackhole are reset so clients reconnect. */
  async restore(): Promise<void> {
    const wasBlackhole = this.#mode === 'blackhole';
    this.#mode = 'up';
    if (wasBlackhole) for (const s of this.#sockets) s.destroy();
    if (!this.#server) await this.#listen(this.port);
  }

  async close(): Promise<void> {
    await this.refuse();
  }
}

/** A started proxy in front of the Postgres at `databaseUrl`, and that URL pointed at the proxy. */
export async function proxyToPostgres(databaseUrl: string): Promise<{ proxy: TcpProxy; url: string }> {
  const target = new URL(databaseUrl);
  const proxy = new TcpProxy(target.hostname, Number(target.port || 5432));
  await proxy.start();
  const via = new URL(databaseUrl);
  via.hostname = '127.0.0.1';
  via.port = String(proxy.port);
  return { proxy, url: via.toString() };
}
