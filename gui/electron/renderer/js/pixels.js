// What the renderer reads from an image's pixels before it is sent (plain ES module, no DOM).

/** `{ transparent, visible }` for RGBA pixel bytes: `transparent` when more than a thousandth of the pixels are
 * see-through (the image is used as it is), `visible` when any pixel is not fully transparent (else there is
 * nothing to make a model of). */
export function alphaSummary(data) {
  const pixels = data.length / 4;
  let seeThrough = 0;
  let visible = false;
  for (let i = 3; i < data.length; i += 4) {
    if (data[i] < 250) seeThrough += 1;
    if (data[i] > 0) visible = true;
  }
  return { transparent: seeThrough > pixels / 1000, visible };
}
