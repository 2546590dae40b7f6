// encoding-japanese as the bundles see it (lib/relay-function.ts aliases the package to this file):
// the package, loaded at its first use. libmime and mailparser require it as they load, and it builds
// its conversion tables (200 KB of object literals) right then, though only mail in a Japanese charset
// (ISO-2022-JP, EUC-JP) ever calls it: about 15 ms of every cold start for nothing. Required by its
// path, since its name would lead back here. Never loaded outside a bundle (tsx, tests).
let encodingJapanese;
module.exports = new Proxy(
  {},
  {
    get(_target, key) {
      encodingJapanese ??= require('../../../node_modules/encoding-japanese/src/index.js');
      return encodingJapanese[key];
    },
  },
);
