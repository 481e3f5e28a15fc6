'use strict';
// Shows the start-up status main.js puts in the URL hash: {state: loading|error, message, fix, detail}.
function render() {
  let status = { state: 'loading', message: 'Starting…' };
  try {
    status = JSON.parse(decodeURIComponent(location.hash.slice(1))) || status;
  } catch { /* keep the default */ }
  const isError = status.state === 'error';
  document.body.classList.toggle('error', isError);
  document.getElementById('message').textContent = status.message || '';
  document.getElementById('detail').textContent = status.detail || '';
  const fix = document.getElementById('fix');
  fix.hidden = !status.fix;
  fix.textContent = status.fix || '';
  document.getElementById('bar').hidden = isError;
  document.getElementById('quit').hidden = !isError;
}
document.getElementById('quit').addEventListener('click', () => window.close());
window.addEventListener('hashchange', render);
render();
