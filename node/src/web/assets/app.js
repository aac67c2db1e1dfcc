// jangteo web page: progressive enhancement only; every page works without this file.
// - the post form shows previews of the chosen photos (read as data: URLs, which the
//   page's Content-Security-Policy allows for images) and warns early about too many;
// - actions that end a trade ask for confirmation.

const photos = document.getElementById("photos");
const previews = document.getElementById("previews");
if (photos && previews) {
  photos.addEventListener("change", () => {
    previews.replaceChildren();
    for (const file of Array.from(photos.files).slice(0, 8)) {
      if (!file.type.startsWith("image/")) continue;
      const reader = new FileReader();
      reader.addEventListener("load", () => {
        const img = document.createElement("img");
        img.src = String(reader.result);
        img.alt = file.name;
        previews.append(img);
      });
      reader.readAsDataURL(file);
    }
  });
}

for (const button of document.querySelectorAll("button[data-action=reject], button[data-action=cancel], button[data-action=dispute]")) {
  button.addEventListener("click", (event) => {
    if (!window.confirm(button.textContent.trim() + "?")) event.preventDefault();
  });
}

// "Use my location" next to a location field (#location): the browser's position, typed
// into the field as "lat,lon" for the person to check and save. Hidden without script.
const useLocation = document.getElementById("use-location");
const locationField = document.getElementById("location");
if (useLocation && locationField && "geolocation" in navigator) {
  useLocation.hidden = false;
  useLocation.addEventListener("click", () => {
    navigator.geolocation.getCurrentPosition(
      (p) => { locationField.value = p.coords.latitude.toFixed(5) + "," + p.coords.longitude.toFixed(5); },
      (e) => { locationField.setCustomValidity(e.message); locationField.reportValidity(); },
      { timeout: 10000 },
    );
  });
}
