/**
 * Go's `os.FileMode` text for a Unix `st_mode`, which is what E2B envd puts in
 * `EntryInfo.permissions` (docs/protocol.md §3.2): the type and special-bit letters in Go's bit order
 * (`d a l T L D p S u g c t ?`), or `-` when none is set, then `rwxrwxrwx`.
 *
 *   0o100644 → `-rw-r--r--`   0o40755 → `drwxr-xr-x`   0o41777 → `dtrwxrwxrwx`
 *   0o120777 → `Lrwxrwxrwx`   0o20666 → `Dcrw-rw-rw-`  0o104755 → `urwxr-xr-x`
 */

const S_IFMT = 0o170000;
const S_IFSOCK = 0o140000;
const S_IFLNK = 0o120000;
const S_IFREG = 0o100000;
const S_IFBLK = 0o060000;
const S_IFDIR = 0o040000;
const S_IFCHR = 0o020000;
const S_IFIFO = 0o010000;
const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_ISVTX = 0o1000;

/** Go's letters in the order `FileMode.String` prints them (ModeDir … ModeIrregular). */
const LETTERS = "dalTLDpSugct?";
const DIR = 0;
const SYMLINK = 4;
const DEVICE = 5;
const PIPE = 6;
const SOCKET = 7;
const SETUID = 8;
const SETGID = 9;
const CHARDEV = 10;
const STICKY = 11;
const IRREGULAR = 12;

/** The Go `FileMode.String()` text for `mode` (a raw `st_mode`, as from lstat). */
export function goFileModeText(mode: number): string {
  const set = new Array<boolean>(LETTERS.length).fill(false);
  switch (mode & S_IFMT) {
    case S_IFDIR:
      set[DIR] = true;
      break;
    case S_IFLNK:
      set[SYMLINK] = true;
      break;
    case S_IFBLK:
      set[DEVICE] = true;
      break;
    case S_IFCHR:
      set[DEVICE] = true;
      set[CHARDEV] = true;
      break;
    case S_IFIFO:
      set[PIPE] = true;
      break;
    case S_IFSOCK:
      set[SOCKET] = true;
      break;
    case S_IFREG:
      break;
    default:
      set[IRREGULAR] = true;
  }
  if (mode & S_ISUID) set[SETUID] = true;
  if (mode & S_ISGID) set[SETGID] = true;
  if (mode & S_ISVTX) set[STICKY] = true;
  let out = "";
  for (let i = 0; i < LETTERS.length; i++) if (set[i]) out += LETTERS[i];
  if (out === "") out = "-";
  const rwx = "rwxrwxrwx";
  for (let i = 0; i < 9; i++) out += mode & (1 << (8 - i)) ? rwx[i] : "-";
  return out;
}

/** Permission bits only (0–0777), as Go's `FileMode.Perm()`. */
export function permissionBits(mode: number): number {
  return mode & 0o777;
}

export function isDirectoryMode(mode: number): boolean {
  return (mode & S_IFMT) === S_IFDIR;
}

export function isRegularMode(mode: number): boolean {
  return (mode & S_IFMT) === S_IFREG;
}

export function isSymlinkMode(mode: number): boolean {
  return (mode & S_IFMT) === S_IFLNK;
}
