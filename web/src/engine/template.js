// Chat templates: the model's own Jinja template through @huggingface/jinja, with the globals
// transformers gives it (@huggingface/jinja itself defines raise_exception and strftime_now) (twin of webllm/engine/template.py); ChatML when the model ships none.
import { Template } from "@huggingface/jinja";
import { InvalidParameterError, PackageError, RequestError } from "./errors.js";

/** Used when a model ships no template: ChatML, the most common convention. */
export const FALLBACK_TEMPLATE =
  "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}" +
  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/** @typedef {{role: string, content: string}} Message */

export class ChatTemplate {
  /**
   * @param {string | null | undefined} source
   * @param {string} [bosToken]
   * @param {string} [eosToken]
   */
  constructor(source, bosToken = "", eosToken = "") {
    this.source = source || FALLBACK_TEMPLATE;
    try {
      this._t = new Template(this.source);
    } catch (e) {
      throw new PackageError(`chat template: ${e instanceof Error ? e.message : e}`);
    }
    this.bosToken = bosToken;
    this.eosToken = eosToken;
  }

  /**
   * @param {Message[]} messages
   * @param {boolean} [addGenerationPrompt]
   * @returns {string}
   */
  render(messages, addGenerationPrompt = true) {
    messages.forEach((m, i) => {
      if (!m || typeof m !== "object" || typeof m.role !== "string" || typeof m.content !== "string")
        throw new InvalidParameterError(`messages[${i}]: each message needs a string 'role' and 'content'`, "messages");
    });
    try {
      return this._t.render({
        messages,
        add_generation_prompt: addGenerationPrompt,
        bos_token: this.bosToken,
        eos_token: this.eosToken,
      });
    } catch (e) {
      if (e instanceof RequestError) throw e;
      throw new RequestError(`chat template: ${e instanceof Error ? e.message : e}`, "messages");
    }
  }
}
