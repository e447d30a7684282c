//! ChatML, the template SmolLM2-Instruct and Qwen2.5-Instruct were trained with (their GGUF
//! `tokenizer.chat_template`): `<|im_start|>{role}\n{content}<|im_end|>\n` per message, the model's default
//! system message when the first one is not a system message, and `<|im_start|>assistant\n` to ask for the
//! answer.

/// The transcribe task's instruction (inference, evaluation and LLM-in-the-loop training).
pub const TRANSCRIBE_INSTRUCTION: &str = "Repeat exactly what the speaker said.";

/// The respond task's instruction: answer what the speaker asked (the browser demo offers the same).
pub const RESPOND_INSTRUCTION: &str = "Answer the speaker's request or question.";

/// The beginning of the transcribe task's answer, written for the model: an open quotation, so that its
/// natural continuation is the quoted words. Without it Qwen2.5-0.5B answers spoken questions and
/// requests instead of repeating them (text oracle on synth `test`: 52.4 % WER without, 28.4 % with; the
/// README's "Evaluate" section has the comparison).
pub const TRANSCRIBE_ANSWER_PREFIX: &str = "The speaker said: \"";

/// The transcribe prompt's worked examples: a question and a request, repeated rather than answered (the
/// failure left once the answer is begun as a quotation). Written for this purpose; none is a sentence of
/// the synthetic sets' templates or of the asterisk prompts.
pub const TRANSCRIBE_EXAMPLES: [&str; 2] = [
    "How many legs does a spider have?",
    "Turn off the lights in the hallway.",
];

/// What the LLM is asked around the audio slot: an instruction before the slot in the user turn (none:
/// the slot alone), optionally the start of the assistant's answer, and the texts that end the answer.
/// Every row of an evaluation (cascade, text oracle, projector) uses the same one.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SlotPrompt {
    pub instruction: Option<String>,
    pub answer_prefix: Option<String>,
    pub stop_strings: Vec<String>,
    /// Worked examples before the real turn: `(what the slot held, as text; the whole answer)`, each a
    /// completed user/assistant exchange under the same instruction (a few-shot prompt).
    pub examples: Vec<(String, String)>,
}

impl SlotPrompt {
    /// Repeat the speech: the instruction, the answer begun as a quotation, ended by the closing quote
    /// or a line break.
    pub fn transcribe() -> Self {
        Self {
            instruction: Some(TRANSCRIBE_INSTRUCTION.into()),
            answer_prefix: Some(TRANSCRIBE_ANSWER_PREFIX.into()),
            stop_strings: vec!["\"".into(), "\n".into()],
            examples: TRANSCRIBE_EXAMPLES
                .iter()
                .map(|said| {
                    (
                        said.to_string(),
                        format!("{TRANSCRIBE_ANSWER_PREFIX}{said}\""),
                    )
                })
                .collect(),
        }
    }

    /// Answer the spoken request or question.
    pub fn respond() -> Self {
        Self::instruction(RESPOND_INSTRUCTION)
    }

    /// Any instruction, answered freely.
    pub fn instruction(text: &str) -> Self {
        Self {
            instruction: Some(text.into()),
            ..Self::default()
        }
    }

    /// The slot alone in the user turn (the ablation without instruction injection).
    pub fn audio_only() -> Self {
        Self::default()
    }
}

/// The system message SmolLM2's template inserts when none is given.
pub const DEFAULT_SYSTEM_PROMPT: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// The system message Qwen2.5's template inserts when none is given.
pub const QWEN_SYSTEM_PROMPT: &str =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

/// The default system message a model's chat template writes, found by looking for the known ones in the
/// template text (a Jinja interpreter would be the general answer; these templates hold the message as a
/// literal). A template with none of them gets no system turn, as such ChatML templates do.
pub fn default_system_prompt(chat_template: Option<&str>) -> Option<&'static str> {
    let template = chat_template?;
    [DEFAULT_SYSTEM_PROMPT, QWEN_SYSTEM_PROMPT]
        .into_iter()
        .find(|known| template.contains(known))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// The prompt text, ending with the assistant header; `default_system` is written first when the
/// conversation does not start with a system message. Encode it with `parse_special = true`; user text
/// containing `<|im_end|>` literally should be rejected or escaped by the caller before.
pub fn chatml_prompt(messages: &[ChatMessage], default_system: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(system) = default_system
        && messages.first().is_none_or(|m| m.role != "system")
    {
        out.push_str(&format!("<|im_start|>system\n{system}<|im_end|>\n"));
    }
    for m in messages {
        out.push_str(&format!(
            "<|im_start|>{}\n{}<|im_end|>\n",
            m.role, m.content
        ));
    }
    out.push_str("<|im_start|>assistant\n");
    out
}

/// Token ids around an embedding slot (projected audio) in the user turn, with the model's default system
/// message (`system`; none when `None`):
///
/// ```text
/// <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{instruction}\n  [slot]  <|im_end|>\n<|im_start|>assistant\n
/// ```
///
/// Without an instruction the user turn holds only the slot. Special tokens come from the template only:
/// the instruction is encoded as plain text. Inference (instruction injection) and LLM-in-the-loop training
/// both build their inputs from this, so they see the same prompt.
pub fn slot_prompt_ids(
    tokenizer: &crate::Tokenizer,
    system: Option<&str>,
    instruction: Option<&str>,
    answer_prefix: Option<&str>,
) -> (Vec<u32>, Vec<u32>) {
    slot_prompt_ids_with_examples(tokenizer, system, instruction, answer_prefix, &[])
}

/// [`slot_prompt_ids`] with worked examples `(slot text, answer)` as completed exchanges between the
/// system message and the real user turn, each user turn holding the instruction and the example's text.
pub fn slot_prompt_ids_with_examples(
    tokenizer: &crate::Tokenizer,
    system: Option<&str>,
    instruction: Option<&str>,
    answer_prefix: Option<&str>,
    examples: &[(String, String)],
) -> (Vec<u32>, Vec<u32>) {
    let system_turn = system
        .map(|s| format!("<|im_start|>system\n{s}<|im_end|>\n"))
        .unwrap_or_default();
    let mut before = tokenizer.encode(&system_turn, true);
    let instruction_line = instruction.map(|i| format!("{i}\n")).unwrap_or_default();
    for (said, answer) in examples {
        before.extend(tokenizer.encode("<|im_start|>user\n", true));
        before.extend(tokenizer.encode(&format!("{instruction_line}{said}"), false));
        before.extend(tokenizer.encode("<|im_end|>\n<|im_start|>assistant\n", true));
        before.extend(tokenizer.encode(answer, false));
        before.extend(tokenizer.encode("<|im_end|>\n", true));
    }
    before.extend(tokenizer.encode("<|im_start|>user\n", true));
    if let Some(instruction) = instruction {
        before.extend(tokenizer.encode(&format!("{instruction}\n"), false));
    }
    let mut after = tokenizer.encode("<|im_end|>\n<|im_start|>assistant\n", true);
    if let Some(prefix) = answer_prefix {
        after.extend(tokenizer.encode(prefix, false));
    }
    (before, after)
}
