// Package hf converts step-gpu models to and from the Hugging Face LLaMA
// layout: a folder with config.json (LlamaForCausalLM), model.safetensors
// and tokenizer.json. It owns a validating safetensors reader (F32, F16 and
// BF16 to float32) and writer (F32), the parameter name map, the config
// translation, and the merge of LoRA adapters into their base weights before
// export. It works on plain float32 maps keyed by step-gpu parameter names;
// reading and writing step-gpu checkpoints is package step's job.
//
// The conversion copies every tensor unchanged: step-gpu and transformers'
// LlamaForCausalLM both store a linear map as (out, in) and both apply RoPE
// in the rotate-half convention (element i of a head paired with element
// i+HS/2, rotated by position * theta^(-2i/HS)), so q_proj and k_proj need
// no permutation. docs/HF.md gives the reasoning and the check
// (scripts/hf_reference.py).
package hf
