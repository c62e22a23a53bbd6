#!/usr/bin/env node
// Boots dynreg's Pico W image (MicroPython rp2) in rp2040js and talks to its REPL over USB CDC.
//
//   node run-pico.mjs --image firmware.uf2                      interactive REPL (Ctrl-X quits)
//   node run-pico.mjs --image firmware.uf2 --exec 'print(1)'    run code via the raw REPL, exit
//   node run-pico.mjs --image firmware.uf2 --script a.py --script b.py
//   ... --serial                   the REPL on stdin/stdout as a board's USB serial port (for a
//                                  pty: mpremote, dynreg provision); ends on SIGTERM or EOF
//   ... --put SRC:DEST             copy a host file onto the board's flash before the scripts
//   ... --tunnel                   TCP (and SNTP) for the board over UART0, to loopback only
//   ... --flash-save flash.bin     write the emulated flash (2 MiB) out at exit
//   ... --flash-load flash.bin     start from a saved flash image (--image is laid over it)
//   ... --cut-at K [--cut-torn]    power cut: stop the chip at the K-th flash program or erase of
//                                  the last script (before it lands, or half landed), exit 4
//   ... --bootrom FILE             the RP2040 B1 bootrom (default: the firmware kit's)
//   ... --unique-id HEX            the flash's 64-bit unique id (machine.unique_id())
//   ... --bootsel                  hold the BOOTSEL button (safe boot)
//   ... --timeout 600              give up after this many wall-clock seconds (exit 3)
//   ... --quiet                    do not echo the boot banner / REPL chatter
//   ... --stock-ssi                keep rp2040js's own SSI stub (flash writes are then lost)
//   ... --uart-echo                loop UART0 back to itself (a self-test of the UART fixes below)
//
// Exit status: 0 when every script ran without a traceback, 1 when one raised, 2 on bad
// arguments, 3 on timeout, 4 on a power cut, 5 on a reset (the watchdog, machine.reset()).
//
// rp2040js emulates the SSI (flash controller) only as far as the boot stage2 needs, so flash
// writes are normally lost. This runner adds a small SPI NOR flash model behind the SSI data
// register, framed by the QSPI chip-select override in IO_QSPI (which is what the bootrom's and
// the SDK's flash routines drive), so littlefs on the internal flash can be written.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RP2040, USBCDC, BasePeripheral, ConsoleLogger, LogLevel } from 'rp2040js';
import { Tunnel } from './tunnel.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FLASH_SIZE = 2 * 1024 * 1024;

// ---------- arguments ----------
const args = { scripts: [], puts: [], timeout: 600, quiet: false };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const val = () => {
    if (i + 1 >= argv.length) usage(`${a} needs a value`);
    return argv[++i];
  };
  if (a === '--image') args.image = val();
  else if (a === '--bootrom') args.bootrom = val();
  else if (a === '--exec') args.scripts.push({ name: '<exec>', code: val() });
  else if (a === '--script') {
    const f = val();
    args.scripts.push({ name: f, code: fs.readFileSync(f, 'utf8') });
  } else if (a === '--flash-save') args.flashSave = val();
  else if (a === '--flash-load') args.flashLoad = val();
  else if (a === '--timeout') args.timeout = Number(val());
  else if (a === '--quiet') args.quiet = true;
  else if (a === '--stock-ssi') args.stockSsi = true;
  else if (a === '--uart-echo') args.uartEcho = true;
  else if (a === '--serial') args.serial = true;
  else if (a === '--bootsel') args.bootsel = true;
  else if (a === '--unique-id') args.uniqueId = val();
  else if (a === '--tunnel') args.tunnel = true;
  else if (a === '--cut-at') args.cutAt = Number(val());
  else if (a === '--cut-torn') args.cutTorn = true;
  else if (a === '--put') {
    const v = val(), k = v.lastIndexOf(':');
    if (k < 1) usage('--put takes SRC:DEST');
    args.puts.push({ src: v.slice(0, k), dest: v.slice(k + 1) });
  }
  else if (a === '--help' || a === '-h') usage();
  else usage(`unknown argument ${a}`);
}
function usage(msg) {
  if (msg) console.error(msg);
  console.error(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 24).join('\n'));
  process.exit(2);
}
if (!args.image && !args.flashLoad) usage('--image or --flash-load is required');
if (args.serial && args.scripts.length) usage('--serial and --exec/--script exclude each other');
if (args.serial && !argv.includes('--timeout')) args.timeout = 24 * 3600;
args.scripts.unshift(...args.puts.flatMap(putScripts));

// --put: each file goes onto the flash in pieces of at most 3 KiB (the raw REPL holds a whole
// script on the chip's heap), into DEST.tmp, then renamed over DEST.
function putScripts({ src, dest }) {
  const data = fs.readFileSync(src), pieces = [];
  const folders = dest.split('/').slice(0, -1).map((_, i, a) => a.slice(0, i + 1).join('/')).filter((f) => f);
  const head = `import os, binascii\nfor d in ${JSON.stringify(folders)}:\n    try:\n        os.mkdir(d)\n` +
    `    except OSError:\n        pass\n`;
  for (let off = 0; off === 0 || off < data.length; off += 3072) {
    const b64 = data.subarray(off, off + 3072).toString('base64');
    const mode = off === 0 ? 'wb' : 'ab';
    let code = (off === 0 ? head : 'import binascii\n') +
      `with open(${JSON.stringify(dest + '.tmp')}, '${mode}') as f:\n    f.write(binascii.a2b_base64('${b64}'))\n`;
    if (off + 3072 >= data.length) code += `import os\nos.rename(${JSON.stringify(dest + '.tmp')}, ${JSON.stringify(dest)})\n`;
    pieces.push({ name: `put ${dest}`, code, quietResult: true });
  }
  return pieces;
}

// ---------- flash model ----------
const SSI_TXFLR = 0x20, SSI_RXFLR = 0x24, SSI_SR = 0x28, SSI_SSIENR = 0x08, SSI_DR0 = 0x60;
const SR_TFNF = 0x2, SR_TFE = 0x4, SR_RFNE = 0x8;
const OUTOVER_NORMAL = 0, OUTOVER_LOW = 2;
const UNIQUE_ID = args.uniqueId ? [...Buffer.from(args.uniqueId.padStart(16, '0').slice(-16), 'hex')]
  : [0xe6, 0x61, 0x38, 0x52, 0x44, 0x59, 0x4e, 0x01];
const JEDEC_ID = [0xef, 0x40, 0x15]; // W25Q16JV, the Pico / Pico W part

class FlashSSI extends BasePeripheral {
  constructor(mcu, name) {
    super(mcu, name);
    this.regs = new Map();
    this.dr0 = 0; // what the stock stub returns outside forced-CS transfers
    this.rx = [];
    this.cs = OUTOVER_NORMAL; // QSPI_SS output override, set by IO_QSPI
    this.wel = false;
    this.cmd = null;
    this.n = 0;
    this.addr = 0;
    this.stats = { program: 0, erase: 0 };
    // Power cuts: while armed, program and erase operations are counted; the cutAt-th one
    // does not land (or, torn, lands half), and onCut() stops the chip when its command ends.
    this.armed = false;
    this.counted = 0;
    this.cutAt = 0;
    this.torn = false;
    this.cutting = false;
    this.onCut = null;
  }
  countOperation() {
    if (!this.armed) return false;
    this.counted++;
    return this.counted === this.cutAt;
  }
  get forced() {
    return this.cs !== OUTOVER_NORMAL;
  }
  setCS(outover) {
    const wasLow = this.cs === OUTOVER_LOW;
    this.cs = outover;
    const isLow = outover === OUTOVER_LOW;
    if (wasLow && !isLow) this.endCommand();
    if (!wasLow && isLow) {
      this.cmd = null;
      this.n = 0;
      this.addr = 0;
    }
  }
  endCommand() {
    const { cmd, n } = this;
    const flash = this.rp2040.flash;
    if (this.wel && n >= 3) {
      const a = this.addr % FLASH_SIZE;
      const size = cmd === 0x20 ? 4096 : cmd === 0x52 ? 32768 : cmd === 0xd8 ? 65536 : 0;
      if (size) {
        const start = a - (a % size);
        const cut = this.countOperation();
        if (!cut) flash.fill(0xff, start, start + size);
        else if (this.torn) flash.fill(0xff, start, start + size / 2);
        this.stats.erase++;
        if (cut) this.cutting = true;
      }
    }
    if (this.wel && (cmd === 0xc7 || cmd === 0x60)) flash.fill(0xff, 0, FLASH_SIZE);
    if ([0x02, 0x20, 0x52, 0xd8, 0xc7, 0x60, 0x01, 0x31, 0x04].includes(cmd)) this.wel = false;
    this.cmd = null;
    if (this.cutting) this.onCut?.(this.counted);
  }
  // One byte clocked out while CS is low; returns the byte clocked in.
  transfer(b) {
    const flash = this.rp2040.flash;
    if (this.cmd === null) {
      this.cmd = b;
      this.n = 0;
      if (b === 0x06) this.wel = true;
      if (b === 0x04) this.wel = false;
      return 0xff;
    }
    const i = this.n++;
    switch (this.cmd) {
      case 0x05: // read status 1: never busy
        return this.wel ? 0x02 : 0x00;
      case 0x35: // read status 2: QE set
        return 0x02;
      case 0x9f:
        return JEDEC_ID[i] ?? 0xff;
      case 0x4b: // unique id: 4 dummy bytes, then 8 id bytes
        return i >= 4 ? (UNIQUE_ID[i - 4] ?? 0xff) : 0xff;
      case 0x03: // read
      case 0x0b: // fast read (one dummy byte)
      case 0x02: // page program
      case 0x20: // erase 4K
      case 0x52: // erase 32K
      case 0xd8: // erase 64K
        if (i < 3) {
          this.addr = (this.addr << 8) | b;
          return 0xff;
        }
        if (this.cmd === 0x03 || this.cmd === 0x0b) {
          const k = i - 3 - (this.cmd === 0x0b ? 1 : 0);
          return k < 0 ? 0xff : flash[(this.addr + k) % FLASH_SIZE];
        }
        if (this.cmd === 0x02 && this.wel) {
          const k = i - 3;
          if (k === 0) {
            this.stats.program++;
            if (this.countOperation()) this.cutting = true;
          }
          // A cut program lands none of its bytes, or (torn) the first half of a page.
          if (this.cutting && !(this.torn && k < 128)) return 0xff;
          const page = this.addr & ~0xff;
          const at = (page | ((this.addr + k) & 0xff)) % FLASH_SIZE;
          flash[at] &= b;
        }
        return 0xff;
      default:
        return 0xff;
    }
  }
  readUint32(offset) {
    if (this.forced) {
      if (offset === SSI_TXFLR) return 0;
      if (offset === SSI_RXFLR) return this.rx.length;
      if (offset === SSI_SR) return SR_TFE | SR_TFNF | (this.rx.length ? SR_RFNE : 0);
      if (offset === SSI_DR0) return this.rx.length ? this.rx.shift() : 0;
    } else {
      if (offset === SSI_SR) return SR_TFE | SR_RFNE | SR_TFNF;
      if (offset === SSI_DR0) return this.dr0;
      if (offset === 0x58) return 0x51535049; // IDR
      if (offset === 0x5c) return 0x3430312a; // SSI_COMP_VERSION
    }
    return this.regs.get(offset) ?? 0;
  }
  writeUint32(offset, value) {
    if (offset === SSI_DR0) {
      if (this.forced) {
        this.rx.push(this.cs === OUTOVER_LOW ? this.transfer(value & 0xff) : 0xff);
        if (this.rx.length > 64) this.rx.shift();
      } else if (value === 0x05) {
        this.dr0 = 0; // stage2's status poll: report "not busy"
      }
      return;
    }
    if (offset === SSI_SSIENR && !(value & 1)) this.rx = [];
    this.regs.set(offset, value >>> 0);
  }
}

class IOQSPI extends BasePeripheral {
  constructor(mcu, name, ssi) {
    super(mcu, name);
    this.ssi = ssi;
    this.regs = new Map();
  }
  readUint32(offset) {
    return this.regs.get(offset) ?? 0;
  }
  writeUint32(offset, value) {
    this.regs.set(offset, value >>> 0);
    if (offset === 0x0c) this.ssi.setCS((value >>> 8) & 3); // GPIO_QSPI_SS_CTRL.OUTOVER
  }
}

// ---------- machine ----------
const mcu = new RP2040();
mcu.logger = new ConsoleLogger(LogLevel.Error);
// The bootrom is not in rp2040js's package: the firmware kit has it (DYNREG_KIT, by default
// ../shared/micropython-kit beside the checkout), or --bootrom / DYNREG_BOOTROM names it.
const kit = process.env.DYNREG_KIT ?? path.join(HERE, '..', '..', 'shared', 'micropython-kit');
const bootromFile = args.bootrom ?? process.env.DYNREG_BOOTROM ?? path.join(kit, 'emu', 'bootrom-b1.bin');
if (!fs.existsSync(bootromFile)) {
  console.error(`[emu] no RP2040 bootrom at ${bootromFile}: pass --bootrom FILE (the B1 bootrom, 16 KiB)`);
  process.exit(2);
}
const rom = fs.readFileSync(bootromFile);
mcu.loadBootrom(new Uint32Array(rom.buffer, rom.byteOffset, rom.length >> 2)); // also fills flash with 0xff
const ssi = new FlashSSI(mcu, 'SSI');
if (!args.stockSsi) {
  mcu.peripherals[0x18000] = ssi;
  mcu.peripherals[0x40018] = new IOQSPI(mcu, 'IO_QSPI', ssi);
}

// BOOTSEL: the button pulls the flash's chip-select low; released, the line reads high
// (rp2.bootsel_button() reads it through SIO's GPIO_HI_IN). rp2040js models no QSPI pads,
// so the pin's input is set here. --bootsel holds the button down.
Object.defineProperty(mcu.qspi[1], 'inputValue', { get: () => !args.bootsel });

if (args.flashLoad) mcu.flash.set(fs.readFileSync(args.flashLoad).subarray(0, mcu.flash.length), 0);
if (args.image) loadImage(args.image);

function loadImage(file) {
  const data = fs.readFileSync(file);
  if (file.endsWith('.uf2')) {
    let blocks = 0;
    for (let off = 0; off + 512 <= data.length; off += 512) {
      const b = data.subarray(off, off + 512);
      if (b.readUInt32LE(0) !== 0x0a324655 || b.readUInt32LE(4) !== 0x9e5d5157) continue;
      const flags = b.readUInt32LE(8);
      if (flags & 1) continue; // "not main flash"
      const addr = b.readUInt32LE(12), size = b.readUInt32LE(16);
      if (addr < 0x10000000 || addr >= 0x11000000) continue;
      mcu.flash.set(b.subarray(32, 32 + size), addr - 0x10000000);
      blocks++;
    }
    if (!args.quiet) console.error(`[emu] loaded ${blocks} UF2 blocks from ${file}`);
  } else if (file.endsWith('.bin')) {
    mcu.flash.set(data, 0);
  } else {
    usage('--image must be a .uf2 or a .bin (flash image starting at 0x10000000)');
  }
}

// ---------- UART fixes ----------
// rp2040js 1.4.1 raises the UART TX interrupt on every interrupt check, so once MicroPython
// enables it the IRQ never stops firing and `machine.UART(...)` hangs; and its RX FIFO is 32
// bytes deep and drops what overflows. Here TX raises the interrupt only after a write to DR
// (the FIFO drains at once), and bytes for the chip wait in a queue until the FIFO has room.
// uartSend(n, bytes) queues bytes for UARTn; uartOnByte[n] receives what the chip sends.
const uartQueues = mcu.uart.map(() => []);
const uartOnByte = mcu.uart.map(() => null);
mcu.uart.forEach((u, n) => {
  u.checkInterrupts = function () {
    this.rp2040.setInterrupt(this.irq, !!(this.interruptStatus & this.interruptMask));
  };
  const write = u.writeUint32.bind(u), read = u.readUint32.bind(u);
  u.writeUint32 = (offset, value) => {
    write(offset, value);
    if (offset === 0) { u.interruptStatus |= 1 << 5; u.checkInterrupts(); }
  };
  u.readUint32 = (offset) => { const v = read(offset); if (offset === 0) uartPump(n); return v; };
  u.onByte = (b) => uartOnByte[n]?.(b);
});
function uartPump(n) {
  const q = uartQueues[n], u = mcu.uart[n];
  while (q.length && u.rxFIFO.itemCount < 16) u.feedByte(q.shift());
}
function uartSend(n, bytes) { for (const b of bytes) uartQueues[n].push(b); uartPump(n); }
setInterval(() => mcu.uart.forEach((_, n) => uartPump(n)), 1).unref();
if (args.uartEcho) uartOnByte[0] = (b) => uartSend(0, [b]); // self-test: UART0 loops back
if (args.tunnel) {
  const tunnel = new Tunnel((bytes) => uartSend(0, bytes), (line) => args.quiet || console.error(`[emu] ${line}`));
  uartOnByte[0] = (b) => tunnel.fromChip(b);
}

// ---------- power cuts ----------
ssi.cutAt = args.cutAt || 0;
ssi.torn = !!args.cutTorn;
ssi.onCut = (k) => {
  console.error(`[emu] power cut at flash operation ${k}${ssi.torn ? ' (torn)' : ''}`);
  finish(4);
};

// ---------- watchdog ----------
// rp2040js counts the watchdog down and calls onWatchdogTrigger when it bites, or when the chip
// forces it (machine.reset()), but resets nothing itself. Here the chip stops there, its flash
// saved, and the runner exits 5: the host boots it again from that flash (pico.py RESET), a
// reset as the firmware sees one (RAM gone, flash kept), though reset_cause() then says power-on.
const watchdog = mcu.peripherals[0x40058];
watchdog.onWatchdogTrigger = () => {
  const why = watchdog.reason === 1 ? 'timed out' : 'forced: machine.reset()';
  console.error(`[emu] watchdog reset (${why}) at ${(mcu.clock.nanos / 1e9).toFixed(3)} s emulated`);
  finish(5);
};

// ---------- USB CDC + raw REPL driver ----------
const cdc = new USBCDC(mcu.usbCtrl);
const outQueue = [];
const send = (s) => {
  for (const c of Buffer.from(s, 'utf8')) outQueue.push(c);
};
let text = ''; // device output not yet consumed by the driver
let connected = false;
let stage = 'boot';
let current = -1;
let failed = false;
let mark = { nanos: 0, wall: 0 };
// Ctrl-C goes out at USB connect, while boot.py may still run: main.py then starts all the
// same, and an application that stays online never gives the prompt back. So while no prompt
// has come, Ctrl-C again whenever the board prints, at most every 200 ms emulated.
let interrupted = 0;
const results = [];

cdc.onDeviceConnected = () => {
  connected = true;
  if (!args.quiet) console.error(`[emu] USB CDC connected at ${(mcu.clock.nanos / 1e9).toFixed(3)} s emulated`);
  if (args.serial) {
    // nothing to say: the host tool opens the port and talks first
  } else if (args.scripts.length) {
    send('\r\x03\x03');
    interrupted = mcu.clock.nanos;
    stage = 'wait-prompt';
  } else {
    send('\r\n');
    stage = 'interactive';
  }
};

cdc.onSerialData = (buf) => {
  const s = Buffer.from(buf).toString('latin1');
  if (stage === 'interactive') process.stdout.write(Buffer.from(buf));
  else if (!args.quiet && (stage === 'boot' || stage === 'wait-prompt')) process.stderr.write(Buffer.from(buf));
  if (stage === 'interactive') return;
  text += s;
  if (stage === 'wait-prompt' && text.indexOf('>>> ') < 0 && mcu.clock.nanos - interrupted > 2e8) {
    send('\x03');
    interrupted = mcu.clock.nanos;
  }
  drive();
};

function drive() {
  for (;;) {
    if (stage === 'wait-prompt') {
      const k = text.indexOf('>>> ');
      if (k < 0) return;
      text = '';
      send('\x01');
      stage = 'wait-raw';
    } else if (stage === 'wait-raw') {
      const k = text.indexOf('raw REPL; CTRL-B to exit\r\n>');
      if (k < 0) return;
      text = text.slice(k + 27);
      nextScript();
    } else if (stage === 'wait-ok') {
      if (text.length < 2) return;
      if (!text.startsWith('OK')) {
        console.error(`[emu] raw REPL did not answer OK: ${JSON.stringify(text.slice(0, 200))}`);
        finish(1);
        return;
      }
      text = text.slice(2);
      stage = 'stdout';
    } else if (stage === 'stdout' || stage === 'stderr') {
      const k = text.indexOf('\x04');
      if (k < 0) {
        if (stage === 'stdout' && text.length) {
          process.stdout.write(Buffer.from(text, 'latin1'));
          text = '';
        }
        return;
      }
      const part = text.slice(0, k);
      text = text.slice(k + 1);
      if (stage === 'stdout') {
        process.stdout.write(Buffer.from(part, 'latin1'));
        stage = 'stderr';
      } else {
        if (part.length) {
          process.stderr.write(Buffer.from(part, 'latin1'));
          failed = true;
        }
        const emu = (mcu.clock.nanos - mark.nanos) / 1e9;
        const wall = (Date.now() - mark.wall) / 1000;
        results.push({ name: args.scripts[current].name, emu, wall, ok: !part.length });
        if (!args.quiet && !args.scripts[current].quietResult) {
          console.error(`[emu] ${args.scripts[current].name}: ${emu.toFixed(3)} s emulated, ${wall.toFixed(3)} s wall, ratio ${(emu / wall).toFixed(3)}`);
        }
        stage = 'wait-gt';
      }
    } else if (stage === 'wait-gt') {
      const k = text.indexOf('>');
      if (k < 0) return;
      text = text.slice(k + 1);
      nextScript();
    } else {
      return;
    }
  }
}

function nextScript() {
  current++;
  ssi.armed = current === args.scripts.length - 1; // cuts count in the last script only
  if (current >= args.scripts.length) {
    finish(failed ? 1 : 0);
    return;
  }
  mark = { nanos: mcu.clock.nanos, wall: Date.now() };
  send(args.scripts[current].code.replace(/\r?\n/g, '\r\n'));
  send('\x04');
  stage = 'wait-ok';
}

let done = false;
function finish(code) {
  if (done) return;
  done = true;
  if (args.flashSave) {
    fs.writeFileSync(args.flashSave, mcu.flash.subarray(0, FLASH_SIZE));
    if (!args.quiet) console.error(`[emu] flash written to ${args.flashSave} (${ssi.stats.erase} erases, ${ssi.stats.program} page programs this run)`);
  }
  if (args.scripts.length) console.error(`[emu] flash operations in the last script: ${ssi.counted}`);
  const emu = mcu.clock.nanos / 1e9, wall = (Date.now() - t0) / 1000;
  if (!args.quiet) console.error(`[emu] total: ${emu.toFixed(3)} s emulated, ${wall.toFixed(3)} s wall`);
  process.exit(code);
}

if (args.serial) {
  // A board's USB serial port: every byte both ways, nothing added; the host tool drives.
  stage = 'interactive';
  process.stdin.on('data', (chunk) => { for (const b of chunk) outQueue.push(b); });
  process.stdin.on('end', () => finish(0));
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, () => finish(0));
} else if (!args.scripts.length) {
  if (process.stdin.isTTY) process.stdin.setRawMode(true);
  process.stdin.on('data', (chunk) => {
    if (chunk[0] === 24) finish(0); // Ctrl-X
    for (const b of chunk) outQueue.push(b);
  });
  // piped (non-tty) input: quit two wall seconds after it ends
  process.stdin.on('end', () => setTimeout(() => finish(0), 2000));
}

// ---------- run loop ----------
const t0 = Date.now();
setTimeout(() => {
  console.error(`\n[emu] timeout after ${args.timeout} s wall (stage ${stage}, connected ${connected}, ` +
    `${(mcu.clock.nanos / 1e9).toFixed(3)} s emulated, PC=0x${(mcu.core.PC >>> 0).toString(16)})`);
  if (text) console.error(`[emu] unconsumed output: ${JSON.stringify(text.slice(-300))}`);
  finish(3);
}, args.timeout * 1000);

mcu.core.PC = 0x10000000; // straight into boot stage2, as rp2040js's own demo does
const { core, clock } = mcu;
function runSlice() {
  const cycleNanos = 1e9 / (mcu.clkSys || 125e6);
  for (let i = 0; i < 500000; i++) {
    if (core.waiting) {
      const n = clock.nanosToNextAlarm;
      if (!(n > 0)) break;
      clock.tick(n);
      i += n / cycleNanos;
    } else {
      clock.tick(core.executeInstruction() * cycleNanos);
    }
  }
  // USB host side: keep the CDC OUT FIFO topped up from our queue
  while (outQueue.length && !cdc.txFIFO.full) cdc.sendSerialByte(outQueue.shift());
  if (!done) setImmediate(runSlice);
}
runSlice();
