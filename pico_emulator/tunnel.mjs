// The emulated Pico W's network: the chip has no radio here, so its `socket` module
// (pico_emulator/board/socket.py) sends TCP streams and SNTP queries as frames over UART0,
// and this relay opens them on the host, to loopback addresses only. Everything above the
// socket (mbedTLS in `tls`, dynreg, umqtt) runs for real on the chip.
//
// A frame is 1 byte kind, 1 byte link id (the chip picks it), 2 bytes length (big-endian) and
// the payload. Chip to host: O open TCP ("host:port"), U open UDP ("host:port"), D data,
// C close, W window update (2 bytes, big-endian: how many bytes the chip has read since the
// last one). Host to chip: K opened, E failed (an errno name), D data, C closed by the peer.
// TCP data goes to the chip within its receive window, as lwIP's on a Pico W would take it:
// the rest waits here (and the host socket stops reading, so the sender waits too) until the
// chip's window updates open it again.
// UDP reaches one service, SNTP on port 123, which the relay answers from the host's clock.
import net from 'node:net';

const LOOPBACK = new Set(['localhost', '127.0.0.1', '::1']);
const MAX_PAYLOAD = 1024;
const WINDOW = 6400; // the chip's receive window: lwIP's TCP_WND on a Pico W (board/socket.py's _WINDOW)
const NTP_UNIX_OFFSET = 2208988800; // seconds from 1900 to 1970

export class Tunnel {
  constructor(toChip, log) {
    this.toChip = toChip;
    this.log = log;
    this.rx = Buffer.alloc(0);
    this.links = new Map(); // id -> {kind: 'tcp' | 'udp', socket}
    this.clockOffset = Number(process.env.DYNREG_EMU_CLOCK_OFFSET || 0); // seconds, for clock tests
  }

  send(kind, id, payload = Buffer.alloc(0)) {
    for (let off = 0; off === 0 || off < payload.length; off += MAX_PAYLOAD) {
      const part = payload.subarray(off, off + MAX_PAYLOAD);
      const head = Buffer.from([kind.charCodeAt(0), id, part.length >> 8, part.length & 0xff]);
      this.toChip(Buffer.concat([head, part]));
    }
  }

  fromChip(byte) {
    this.rx = Buffer.concat([this.rx, Buffer.from([byte])]);
    while (this.rx.length >= 4) {
      const n = this.rx.readUInt16BE(2);
      if (this.rx.length < 4 + n) return;
      const kind = String.fromCharCode(this.rx[0]), id = this.rx[1];
      const payload = this.rx.subarray(4, 4 + n);
      this.rx = this.rx.subarray(4 + n);
      this.frame(kind, id, Buffer.from(payload));
    }
  }

  frame(kind, id, payload) {
    if (kind === 'O' || kind === 'U') return this.open(kind === 'O' ? 'tcp' : 'udp', id, payload.toString());
    const link = this.links.get(id);
    if (!link) return;
    if (kind === 'D') {
      if (link.kind === 'tcp') link.socket.write(payload);
      else this.answerNtp(id, payload);
    } else if (kind === 'W' && link.kind === 'tcp' && payload.length === 2) {
      link.window += payload.readUInt16BE(0);
      this.flush(id, link);
    } else if (kind === 'C') {
      this.links.delete(id);
      if (link.kind === 'tcp') link.socket.destroy();
    }
  }

  open(kind, id, target) {
    const k = target.lastIndexOf(':');
    const host = target.slice(0, k), port = Number(target.slice(k + 1));
    if (!LOOPBACK.has(host) && !host.startsWith('127.')) {
      this.log(`tunnel: ${target} refused (loopback only)`);
      return this.send('E', id, Buffer.from('EHOSTUNREACH'));
    }
    if (kind === 'udp') {
      if (port !== 123) return this.send('E', id, Buffer.from('ECONNREFUSED'));
      this.links.set(id, { kind });
      return this.send('K', id);
    }
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setNoDelay(true);
    const link = { kind, socket, open: false, window: WINDOW, pending: [], closing: false };
    this.links.set(id, link);
    socket.on('connect', () => { link.open = true; this.send('K', id); });
    socket.on('data', (data) => {
      if (this.links.get(id) !== link) return;
      link.pending.push(data);
      this.flush(id, link);
    });
    socket.on('error', (e) => {
      if (!link.open && this.links.get(id) === link) {
        this.links.delete(id);
        this.send('E', id, Buffer.from(e.code || 'EIO'));
      }
    });
    socket.on('close', () => {
      if (link.open && this.links.get(id) === link) {
        link.closing = true; // the peer's close reaches the chip after the data before it
        this.flush(id, link);
      }
    });
  }

  flush(id, link) {
    // What the chip's window takes; the host socket reads on only once nothing waits here.
    while (link.window > 0 && link.pending.length) {
      const head = link.pending[0], n = Math.min(head.length, link.window);
      this.send('D', id, head.subarray(0, n));
      link.window -= n;
      if (n === head.length) link.pending.shift();
      else link.pending[0] = head.subarray(n);
    }
    if (link.pending.length) {
      link.socket.pause();
    } else if (link.closing) {
      this.links.delete(id);
      this.send('C', id);
    } else {
      link.socket.resume();
    }
  }

  answerNtp(id, query) {
    // A server-mode SNTP reply (RFC 4330): the transmit timestamp is what ntptime reads.
    if (query.length < 48) return;
    const reply = Buffer.alloc(48);
    reply[0] = 0x24; // leap 0, version 4, mode 4 (server)
    reply[1] = 1; // stratum 1
    const now = Date.now() / 1000 + this.clockOffset + NTP_UNIX_OFFSET;
    const seconds = Math.floor(now), fraction = Math.floor((now - seconds) * 2 ** 32);
    for (const at of [16, 32, 40]) { reply.writeUInt32BE(seconds >>> 0, at); reply.writeUInt32BE(fraction >>> 0, at + 4); }
    query.copy(reply, 24, 40, 48); // originate = the query's transmit
    this.send('D', id, reply);
  }
}
