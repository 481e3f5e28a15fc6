# Thin wrapper: all logic lives in bootstrap.py.
Set-Location $PSScriptRoot
$py = if (Get-Command py -ErrorAction SilentlyContinue) { "py" } else { "python" }
& $py bootstrap.py install @args
exit $LASTEXITCODE
