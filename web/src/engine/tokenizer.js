// Tokenizer: the package's tokenizer.json through @huggingface/tokenizers, with an incremental
// streaming decoder (twin of webllm/engine/tokenizer.py).
import { Tokenizer as HFTokenizer } from "@huggingface/tokenizers";
import { PackageError } from "./errors.js";

/**
 * @typedef {object} TokenizerMeta the manifest's `tokenizer` entry: special tokens resolved at compile time
 * @property {string} file
 * @property {string | null} [bos_token]
 * @property {string | null} [eos_token]
 * @property {number | null} [bos_token_id]
 * @property {number[]} [eos_token_ids]
 */

export class Tokenizer {
  /**
   * @param {object} json the parsed tokenizer.json
   * @param {TokenizerMeta} meta
   */
  constructor(json, meta) {
    try {
      this._tok = new HFTokenizer(json, {});
    } catch (e) {
      throw new PackageError(`${meta.file}: cannot load tokenizer (${e instanceof Error ? e.message : e})`);
    }
    // @huggingface/tokenizers 0.2.0 leaves out-of-vocabulary words of a WordLevel model as undefined
    // ids instead of its unk_token: mapped here, as the Rust library does.
    const unk = /** @type {any} */ (json).model?.unk_token;
    /** @type {number | null} */
    this._unkId = unk == null ? null : this._tok.token_to_id(unk) ?? null;
    this._file = meta.file;
    this.bosTokenId = meta.bos_token_id ?? null;
    /** @type {number[]} */
    this.eosTokenIds = [...(meta.eos_token_ids ?? [])];
    this.bosToken = meta.bos_token ?? "";
    this.eosToken = meta.eos_token ?? "";
  }

  /**
   * Fetch and build the tokenizer of a package.
   * @param {string | URL} packageUrl the package folder's URL (ending in "/")
   * @param {TokenizerMeta} meta
   */
  static async load(packageUrl, meta) {
    const url = new URL(meta.file, packageUrl);
    let res;
    try {
      res = await fetch(url);
    } catch (e) {
      throw new PackageError(`${url}: cannot fetch the tokenizer (${e instanceof Error ? e.message : e})`);
    }
    if (!res.ok) throw new PackageError(`${url}: HTTP ${res.status} for the tokenizer`);
    return new Tokenizer(await res.json(), meta);
  }

  /**
   * Token ids of `text`. Chat prompts come rendered with their special tokens as text, so by default
   * no BOS is added (templates that want one write it).
   * @param {string} text
   * @param {boolean} [addSpecialTokens]
   * @returns {number[]}
   */
  encode(text, addSpecialTokens = false) {
    const ids = this._tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
    for (let i = 0; i < ids.length; i++) {
      if (ids[i] === undefined || ids[i] === null) {
        if (this._unkId === null) throw new PackageError(`${this._file}: the tokenizer has no id for part of the text`);
        ids[i] = this._unkId;
      }
    }
    return ids;
  }

  /**
   * @param {number[]} ids
   * @param {boolean} [skipSpecialTokens]
   */
  decode(ids, skipSpecialTokens = true) {
    if (ids.length === 0) return "";
    return this._tok.decode(ids, { skip_special_tokens: skipSpecialTokens, clean_up_tokenization_spaces: false });
  }
}

/**
 * Turns a growing list of ids into text pieces, holding back incomplete UTF-8 sequences. Each push
 * decodes only a short window (the ids since the last emitted piece, plus the one before as context
 * for decoders that strip a leading space), not the whole reply.
 */
export class StreamDecoder {
  /** @param {Tokenizer} tok */
  constructor(tok) {
    this.tok = tok;
    /** @type {number[]} */
    this.ids = [];
    this.prefix = 0; // window start: context ids already emitted
    this.read = 0; // ids before this one are emitted
  }

  /** @param {number} id @returns {string} the new text (possibly empty) */
  push(id) {
    this.ids.push(id);
    const before = this.tok.decode(this.ids.slice(this.prefix, this.read));
    const now = this.tok.decode(this.ids.slice(this.prefix));
    if (now.length <= before.length || now.endsWith("\ufffd")) return ""; // incomplete character: wait
    this.prefix = this.read;
    this.read = this.ids.length;
    return now.slice(before.length);
  }
}
