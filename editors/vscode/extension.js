// Starts `weft lsp` (the command in the `weft.command` setting) for .flow files.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate() {
  const [command, ...args] = vscode.workspace.getConfiguration("weft").get("command", ["weft", "lsp"]);
  client = new LanguageClient(
    "weft",
    "Weft",
    { command, args },
    { documentSelector: [{ scheme: "file", language: "weft" }] },
  );
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
