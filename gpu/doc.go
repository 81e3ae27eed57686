// Package gpu is the only package in step-gpu that touches the WebGPU binding
// (github.com/cogentcore/webgpu). It owns adapter choice, the device and its
// limits, buffers and the byte ledger that is the project's memory measurement,
// chunked uploads and downloads, the pipeline and bind-group caches, WGSL text
// templating, and the Recorder that packs many dispatches into bounded
// submissions.
//
// Everything asynchronous in WebGPU (adapter and device requests, buffer
// mapping, queue completion) is wrapped here into synchronous Go calls that
// return errors naming the object involved.
package gpu
