// tlscopes app: sends the form to the server and renders the answer with the explorer's script.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("app-config").textContent);
  const form = document.getElementById("ask");
  const message = document.getElementById("message");
  const result = document.getElementById("result");
  const downloads = document.getElementById("downloads");
  const field = (id) => document.getElementById(id);
  const urls = [];
  field("model").value = config.default;

  function say(text, error) {
    message.textContent = text;
    message.classList.toggle("tla-error", Boolean(error));
  }
  function offer(id, text, type) {
    const link = field(id);
    if (text === undefined) {
      link.removeAttribute("href");
      link.style.display = "none";
      return;
    }
    const url = URL.createObjectURL(new Blob([text], { type: type }));
    urls.push(url);
    link.href = url;
    link.style.display = "";
  }
  async function ask(path, body, busy) {
    say(busy, false);
    document.body.dataset.busy = "1";
    try {
      const response = await fetch(path, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      const answer = await response.json();
      if (!response.ok) {
        say(answer.error || "The request failed (" + response.status + ").", true);
        return;
      }
      while (urls.length) URL.revokeObjectURL(urls.pop());
      window.TlscopesExplorer.mount(result, answer.payload);
      offer("download-json", answer.file || JSON.stringify(answer.payload), "application/json");
      offer("download-html", answer.html, "text/html");
      downloads.classList.add("tla-ready");
      say("Done: " + answer.payload.title + ".", false);
    } catch (error) {
      say("No answer from the server: " + error, true);
    } finally {
      delete document.body.dataset.busy;
    }
  }
  function request() {
    return {
      text: field("text").value,
      scope: field("scope").value,
      target: field("target").value,
      position: field("position").value,
      model: field("model").value,
    };
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ask("/api/attribute", request(), "Explaining…");
  });
  field("explore-all").addEventListener("click", () => {
    ask("/api/explore", request(), "Explaining every position with the three scopes…");
  });
  for (const example of config.examples) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "example: " + example;
    button.addEventListener("click", () => { field("text").value = example; });
    field("examples").appendChild(button);
  }
})();
